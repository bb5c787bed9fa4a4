"""Knowledge-driven synthesis: extra patients for rare diseases, simulated from their HPO annotations.

Unlike the matrix samplers this works on the canonical patient table, before featurisation:
`KnowledgeSynthesizer.fit_resample(patients, y)` appends `target - n` simulated patients for every disease with
n < target training patients, drawn the way `dxlab.simulate.cohort` draws a cohort (annotated frequencies,
omissions, imprecise ancestor terms, background findings, excluded findings, age from onset, sex, family
history from inheritance, missing demographics). `AugmentedPipeline(augmenter, pipeline)` fits the featurizer
and classifier on the augmented table; prediction is the inner pipeline's, so simulated patients never reach
a validation fold or a test set.

Caveat on the embedded default data: its patients come from the same simulator, so with `simulator` set to
the cohort's own settings this augmenter knows the generating process; on real cases it only knows the
annotations.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from dxlab.augment.samplers import rows_needed

log = logging.getLogger(__name__)


def simulator_config(settings: Mapping | None, seed: int):
    """A SimulatorConfig from a `data.simulator`-like mapping (None: the simulator's defaults)."""
    from dxlab.simulate.cohort import SimulatorConfig

    settings = dict(settings or {})
    fields = set(SimulatorConfig.__dataclass_fields__)
    settings = {k: v for k, v in settings.items() if k in fields}
    for key in ("databases", "default_age_range"):
        if key in settings:
            settings[key] = tuple(settings[key])
    if "onset_age_ranges" in settings:
        settings["onset_age_ranges"] = {k: tuple(v) for k, v in settings["onset_age_ranges"].items()}
    settings["seed"] = seed
    return SimulatorConfig(**settings)


class _PatientFactory:
    """Draws one canonical patient of a disease (the per-patient part of `simulate_patients`)."""

    def __init__(self, knowledge, diseases: list[str], cfg):
        from dxlab.simulate.cohort import DrawContext

        self.knowledge, self.cfg = knowledge, cfg
        self.context = DrawContext(knowledge, diseases, cfg.history_codes)
        self.models = self.context.models

    def patient(self, disease_id: str, rng: np.random.Generator) -> dict:
        from dxlab.simulate.cohort import _note

        cfg, knowledge = self.cfg, self.knowledge
        draw = self.context.draw(disease_id, cfg, knowledge, rng)
        sex, age, family, history = draw["sex"], draw["age"], draw["family"], draw["history"]
        findings, excluded = [str(t) for t in draw["findings"]], [str(t) for t in draw["excluded"]]
        height, weight = draw["height"], draw["weight"]
        measurements = {}
        if rng.random() >= cfg.missing_measurements_rate:
            measurements["height_cm"] = height
        if rng.random() >= cfg.missing_measurements_rate:
            measurements["weight_kg"] = weight
        return {
            "age": round(age, 1) if rng.random() >= cfg.missing_age_rate else np.nan,
            "sex": sex if rng.random() >= cfg.missing_sex_rate else None,
            "family_history": family if rng.random() >= cfg.missing_family_history_rate else np.nan,
            "findings": findings, "excluded": excluded, "history": history, "measurements": measurements,
            "note": _note(age, sex, findings, excluded, family, knowledge, rng), "diagnosis": disease_id,
        }


class KnowledgeSynthesizer(BaseEstimator):
    """Patient-level augmenter: `fit_resample(patients, y)` -> (patients + simulated ones, labels).

    simulator: settings for `dxlab.simulate.cohort.SimulatorConfig` (the `data.simulator` node, or None for
    the simulator's defaults). Diseases the knowledge base does not annotate are skipped (logged).
    """

    input = "patients"

    def __init__(self, knowledge_dir: str = "data/knowledge", target: int = 10, simulator: Mapping | None = None,
                 random_state: int | None = 0):
        self.knowledge_dir = knowledge_dir
        self.target = target
        self.simulator = simulator
        self.random_state = random_state

    def fit_resample(self, X: pd.DataFrame, y=None):
        from dxlab.knowledge.base import Knowledge

        y = np.asarray(X["diagnosis"] if y is None else y).astype(str)
        need = rows_needed(y, self.target)
        self.rows_needed_ = need
        self.n_synthetic_, self.skipped_ = {}, []
        if not need:
            return X, y
        settings = self.simulator
        if settings is not None and not isinstance(settings, Mapping):  # an OmegaConf node
            from omegaconf import OmegaConf

            settings = OmegaConf.to_container(settings, resolve=True)
        cfg = simulator_config(settings, 0 if self.random_state is None else int(self.random_state))
        factory = _PatientFactory(Knowledge.load(self.knowledge_dir), sorted(need), cfg)
        rng = np.random.default_rng(cfg.seed)
        rows = []
        for disease, n_new in need.items():
            if disease not in factory.models:
                self.skipped_.append(disease)
                continue
            for i in range(n_new):
                rows.append({"patient_id": f"synthetic-{disease}-{i}", **factory.patient(disease, rng)})
            self.n_synthetic_[disease] = n_new
        log.info("KnowledgeSynthesizer: +%d simulated patients for %d of %d diseases below target %d%s",
                 len(rows), len(self.n_synthetic_), len(need), self.target,
                 f" ({len(self.skipped_)} without annotations skipped)" if self.skipped_ else "")
        if not rows:
            return X, y
        synthetic = pd.DataFrame(rows)
        synthetic["source"], synthetic["source_file"], synthetic["source_row"], synthetic["day"] = (
            "knowledge_synthesis", "", -1, "")
        out = pd.concat([X.reset_index(drop=True), synthetic.reindex(columns=X.columns)], ignore_index=True)
        return out, np.concatenate([y, synthetic["diagnosis"].to_numpy(dtype=str)])


class AugmentedPipeline(ClassifierMixin, BaseEstimator):
    """Fit: augment the training patients, then fit the inner pipeline on them. Predict: the inner pipeline's
    (the augmenter never runs outside fit)."""

    def __init__(self, augmenter=None, pipeline=None):
        self.augmenter = augmenter
        self.pipeline = pipeline

    def fit(self, X: pd.DataFrame, y=None):
        y = np.asarray(X["diagnosis"] if y is None else y)
        self.augmenter_ = clone(self.augmenter)
        X_aug, y_aug = self.augmenter_.fit_resample(X, y)
        self.pipeline_ = clone(self.pipeline).fit(X_aug, y_aug)
        self.classes_ = self.pipeline_.classes_
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.pipeline_.predict_proba(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.pipeline_.predict(X)
