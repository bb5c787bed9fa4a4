"""Stage `preprocess`: normalise term ids; per source, a stratified test split (`evaluation: holdout`) or every row
to training (`evaluation: grouped`: the model's folds grouped by publication evaluate them)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from dxlab.data.preprocess import normalise_terms, stratified_split
from dxlab.data.schema import read_parquet, to_parquet
from dxlab.knowledge.base import Knowledge
from dxlab.stages._runner import main_for, write_json


def run(cfg: DictConfig) -> dict:
    table = read_parquet(Path(cfg.paths.interim) / "patients.parquet")
    if cfg.data.vocabulary == "hpo":
        table = normalise_terms(table, Knowledge.load(cfg.paths.knowledge).normalise_term)
    trains, tests, report = [], [], {}
    for name, rows in table.groupby("source", sort=False):
        rows = rows.reset_index(drop=True)
        if cfg.data.sources[name].get("evaluation", "holdout") == "grouped":
            trains.append(rows)
            report[name] = {"evaluation": "grouped", "n_train": int(len(rows)), "n_test": 0,
                            "n_groups": int(rows["group_id"].nunique()), "n_diseases": int(rows["diagnosis"].nunique())}
            continue
        train, test, split = stratified_split(rows, cfg.split.test_size, cfg.seed, cfg.split.min_patients_for_test)
        trains.append(train)
        tests.append(test)
        report[name] = {"evaluation": "holdout", **split}
    train = pd.concat(trains, ignore_index=True)
    test = pd.concat(tests, ignore_index=True) if tests else train.iloc[:0]
    out = Path(cfg.paths.processed)
    out.mkdir(parents=True, exist_ok=True)
    to_parquet(train, out / "train.parquet")
    to_parquet(test, out / "test.parquet")
    write_json({"n_train": int(len(train)), "n_test": int(len(test)), "sources": report},
               Path(cfg.paths.reports) / "stages" / "preprocess.json")
    return {"n_train": int(len(train)), "n_test": int(len(test))} | {
        f"{name}_n_train": r["n_train"] for name, r in report.items()}


def main() -> None:
    main_for("preprocess", run)


if __name__ == "__main__":
    main()
