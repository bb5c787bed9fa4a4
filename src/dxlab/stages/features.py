"""Stage `features`: fit the patient featurizer on the feed's training patients (what the feature-matrix models of
the zoo learn from: conf/model/*.yaml `train_sources`), write sparse matrices of its training and test rows."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig
from scipy import sparse

from dxlab.data.schema import read_parquet
from dxlab.stages._runner import main_for, write_json


def run(cfg: DictConfig) -> dict:
    processed = Path(cfg.paths.processed)
    train, test = read_parquet(processed / "train.parquet"), read_parquet(processed / "test.parquet")
    feed = cfg.data.get("feed")
    if feed is not None and (train["source"] == feed).any():
        train = train[train["source"] == feed].reset_index(drop=True)
        test = test[test["source"] == feed].reset_index(drop=True)
    featurizer = instantiate(cfg.features).fit(train, train["diagnosis"])
    out = Path(cfg.paths.features)
    out.mkdir(parents=True, exist_ok=True)
    x_train, x_test = featurizer.transform(train), featurizer.transform(test)
    sparse.save_npz(out / "train.npz", x_train)
    sparse.save_npz(out / "test.npz", x_test)
    joblib.dump(featurizer, out / "featurizer.joblib", compress=3)
    names = featurizer.get_feature_names_out()
    (out / "feature_names.txt").write_text("\n".join(names) + "\n")
    blocks = {}
    for name in names:
        blocks[name.split("__")[0]] = blocks.get(name.split("__")[0], 0) + 1
    metrics = {"n_features": int(x_train.shape[1]), "train_density": float(x_train.nnz / np.prod(x_train.shape)),
               "features_by_block": blocks}
    write_json(metrics, Path(cfg.paths.reports) / "stages" / "features.json")
    return metrics


def main() -> None:
    main_for("features", run)


if __name__ == "__main__":
    main()
