"""Rare-disease strategies, chosen by the `augment` config group (conf/augment/).

- matrix samplers (`samplers.py`: SMOTE, SMOTEN/SMOTENC, ADASYN, Borderline-SMOTE; `gan.py`: conditional GAN)
  implement `fit_resample` on the feature matrix and sit between the featurizer and the classifier in an
  imbalanced-learn Pipeline, so they run on training folds only;
- patient-level augmenters (`knowledge_synthesis.py`) add simulated patients before featurisation, inside an
  `AugmentedPipeline`;
- `class_weight: balanced` reweights instead of resampling; `head` wraps the classifier (`fewshot.py`:
  a prototypical network blended in).

Every augment config has `name`, `sampler` (a `_target_` node or null) and optionally `class_weight` and
`head`. Models with `input: patients` (the knowledge ranker) take none of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager

import numpy as np


def _get(augment, key: str):
    return None if augment is None else augment.get(key)


def make_sampler(augment):
    """The configured sampler (unfitted), or None."""
    from hydra.utils import instantiate

    node = _get(augment, "sampler")
    return instantiate(node) if node is not None else None


def is_patient_level(sampler) -> bool:
    return getattr(sampler, "input", "features") == "patients"


def configure_classifier(augment, estimator):
    """Apply `class_weight` and `head` of the augment config to a freshly built classifier."""
    if _get(augment, "class_weight"):
        from dxlab.augment.samplers import with_class_weight

        estimator = with_class_weight(estimator, augment.class_weight)
    if _get(augment, "head") is not None:
        from hydra.utils import instantiate

        estimator = instantiate(augment.head, base=estimator)
    return estimator


def find_sampler(model):
    """The (fitted) sampler or augmenter inside a fitted model, or None."""
    if hasattr(model, "augmenter_"):
        return model.augmenter_
    for _, step in getattr(model, "steps", []):
        if hasattr(step, "fit_resample"):
            return step
    return None


def synthetic_rows_by_stratum(model, y, thresholds: Mapping[str, int] | None = None) -> dict | None:
    """How many synthetic rows the model's sampler added, by stratum of the disease's (real) training count;
    None when the model has no sampler."""
    from dxlab.evaluation.metrics import STRATA, assign_strata

    sampler = find_sampler(model)
    if sampler is None or not hasattr(sampler, "n_synthetic_"):
        return None
    labels, counts = np.unique(np.asarray(y).astype(str), return_counts=True)
    strata = assign_strata(dict(zip(labels, counts.tolist())), thresholds)
    out = {s: 0 for s in STRATA}
    for cls, n in sampler.n_synthetic_.items():
        out[strata.get(str(cls), "rare")] += int(n)
    out["total"] = int(sum(sampler.n_synthetic_.values()))
    out["n_diseases"] = int(sum(1 for n in sampler.n_synthetic_.values() if n))
    return out


def extra_requirements(model) -> list[str]:
    """Pip requirements a pickled model needs beyond scikit-learn's stack (imbalanced-learn, torch)."""
    from importlib.metadata import version

    needed: set[str] = set()
    stack = [model]
    while stack:
        obj = stack.pop()
        if type(obj).__module__.startswith("imblearn"):
            needed.add("imbalanced-learn")
        needed.update(getattr(obj, "pip_requires", ()))
        stack.extend(step for _, step in getattr(obj, "steps", []))
        stack.extend(getattr(obj, name) for name in ("pipeline_", "augmenter_", "base_", "protonet_", "estimator_")
                     if hasattr(obj, name))
    return [f"{name}=={version(name)}" for name in sorted(needed)]


@contextmanager
def torch_threads(n: int | None):
    """Run torch with `n` intra-op threads (None: leave as is). One thread is the default of dxlab's torch code:
    on a 2-core machine already busy with other work, more threads slow a small network down several-fold."""
    import torch

    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
