"""Build, fit and save the configured models; every fitted model takes the canonical patient table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import joblib
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from dxlab.augment import configure_classifier, is_patient_level, make_sampler
from dxlab.models.calibration import with_calibration


@dataclass
class ModelSpec:
    name: str
    config: DictConfig
    role: str = "model"  # "baseline" or "model": fixes the report paths whatever the model is

    @property
    def input(self) -> str:
        return self.config.get("input", "features")

    @property
    def train_sources(self) -> list[str] | None:
        """The sources whose rows train this model (None: every source). A model that cannot rank the full
        universe (the feature-matrix zoo: one output per training disease) names the simulated cohort here."""
        sources = self.config.get("train_sources")
        return None if sources is None else [str(s) for s in sources]

    def training_rows(self, table: pd.DataFrame) -> pd.DataFrame:
        """The rows of `table` this model trains on (its train_sources)."""
        sources = self.train_sources
        if sources is None or "source" not in table:
            return table
        return table[table["source"].isin(sources)].reset_index(drop=True)


def takes_groups(estimator) -> bool:
    """Whether the estimator's fit takes `groups` (the diagnostic model: folds by publication)."""
    import inspect

    return "groups" in inspect.signature(estimator.fit).parameters


def model_specs(cfg: DictConfig) -> list[ModelSpec]:
    """The baseline and the selected model (once when they are the same), skipping ones the data can't feed."""
    specs: list[ModelSpec] = []
    for key in ("baseline", "model"):
        if key not in cfg or cfg[key] is None:
            continue
        model_cfg = cfg[key]
        needs = model_cfg.get("requires_vocabulary")
        if needs and needs != cfg.data.vocabulary:
            continue
        if all(s.name != model_cfg.name for s in specs):
            specs.append(ModelSpec(model_cfg.name, model_cfg, key))
    return specs


def fit_model(spec: ModelSpec, train: pd.DataFrame, featurizer=None, x_train=None, augment=None):
    """Fit one model. Learned models reuse the fitted featurizer and its cached matrix; the result is a
    Pipeline from patients to probabilities either way. `augment` (the config's augment node, None = none):
    a matrix sampler resamples the cached matrix before the classifier fits; a patient-level augmenter refits
    a clone of the featurizer on the augmented patients, as cross-validation does."""
    estimator = instantiate(spec.config.estimator)
    y = train["diagnosis"].astype(str).to_numpy()
    if spec.input == "patients":
        if takes_groups(estimator):
            return estimator.fit(train, y, groups=train["group_id"].astype(str).to_numpy())
        return with_calibration(estimator, spec.config.get("calibration")).fit(train, y)
    if featurizer is None or x_train is None:
        raise ValueError(f"model {spec.name!r} needs the features stage's featurizer and matrix")
    estimator = with_calibration(configure_classifier(augment, estimator), spec.config.get("calibration"))
    sampler = make_sampler(augment)
    if sampler is None:
        estimator.fit(x_train, y)
        return _assemble(featurizer, estimator)
    if is_patient_level(sampler):
        return _assemble(clone(featurizer), estimator, sampler).fit(train, y)
    x_resampled, y_resampled = sampler.fit_resample(x_train, y)
    estimator.fit(x_resampled, y_resampled)
    return _assemble(featurizer, estimator, sampler)


def build_pipeline(cfg: DictConfig, spec: ModelSpec):
    """A fresh, unfitted pipeline from patients to probabilities: what cross-validation refits per fold."""
    estimator = instantiate(spec.config.estimator)
    calibration = spec.config.get("calibration")
    if spec.input == "patients":
        return with_calibration(estimator, calibration)
    augment = cfg.get("augment")
    classifier = with_calibration(configure_classifier(augment, estimator), calibration)
    return _assemble(instantiate(cfg.features), classifier, make_sampler(augment))


def _assemble(features, classifier, sampler=None):
    """Patients -> probabilities. With a matrix sampler: an imbalanced-learn Pipeline (samplers run in fit,
    never in predict); with a patient-level augmenter: an AugmentedPipeline (augments in fit only)."""
    if sampler is None:
        return Pipeline([("features", features), ("classifier", classifier)])
    if is_patient_level(sampler):
        from dxlab.augment.knowledge_synthesis import AugmentedPipeline

        return AugmentedPipeline(sampler, Pipeline([("features", features), ("classifier", classifier)]))
    from imblearn.pipeline import Pipeline as SamplingPipeline

    return SamplingPipeline([("features", features), ("sampler", sampler), ("classifier", classifier)])


def save_model(model, directory: str | Path, name: str) -> Path:
    path = Path(directory) / f"{name}.joblib"
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, path, compress=3)
    return path


def load_model(directory: str | Path, name: str):
    path = Path(directory) / f"{name}.joblib"
    if not path.exists():
        raise FileNotFoundError(f"model {path} not found: run the train stage")
    return joblib.load(path)
