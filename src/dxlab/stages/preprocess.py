"""Stage `preprocess`: normalise term ids and split the validated patients into train and test."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from dxlab.data.preprocess import normalise_terms, stratified_split
from dxlab.data.schema import read_parquet, to_parquet
from dxlab.knowledge.base import Knowledge
from dxlab.stages._runner import main_for, write_json


def run(cfg: DictConfig) -> dict:
    table = read_parquet(Path(cfg.paths.interim) / "patients.parquet")
    if cfg.data.vocabulary == "hpo":
        table = normalise_terms(table, Knowledge.load(cfg.paths.knowledge).normalise_term)
    train, test, report = stratified_split(table, cfg.split.test_size, cfg.seed, cfg.split.min_patients_for_test)
    out = Path(cfg.paths.processed)
    out.mkdir(parents=True, exist_ok=True)
    to_parquet(train, out / "train.parquet")
    to_parquet(test, out / "test.parquet")
    write_json(report, Path(cfg.paths.reports) / "stages" / "preprocess.json")
    return {k: v for k, v in report.items() if not isinstance(v, list)} | {
        "n_diseases_train_only": len(report["diseases_train_only"])}


def main() -> None:
    main_for("preprocess", run)


if __name__ == "__main__":
    main()
