"""Stage `evaluate`: metrics overall and by disease-frequency stratum for every trained model, with plots."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from dxlab.data.schema import read_parquet
from dxlab.evaluation import metrics as M
from dxlab.evaluation import plots
from dxlab.evaluation.report import metrics_table
from dxlab.knowledge.base import Knowledge
from dxlab.models.build import load_model, model_specs
from dxlab.stages._runner import main_for, write_json
from dxlab.tracking.mlflow_tracking import log_artifact, log_metrics, stage_run, tracking_uri

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    processed, reports = Path(cfg.paths.processed), Path(cfg.paths.reports)
    train, test = read_parquet(processed / "train.parquet"), read_parquet(processed / "test.parquet")
    train_counts = train["diagnosis"].astype(str).value_counts().to_dict()
    thresholds = OmegaConf.to_container(cfg.evaluate.strata)
    ks = tuple(cfg.evaluate.ks)
    names = {}
    if cfg.data.vocabulary == "hpo":
        names = Knowledge.load(cfg.paths.knowledge).disease_names
    y_true = test["diagnosis"].astype(str).to_numpy()
    results, calibration = {}, {}
    plot_dir, figures = reports / "plots", reports / "figures"
    for spec in model_specs(cfg):
        model = load_model(cfg.paths.models, spec.name)
        proba = model.predict_proba(test)
        classes = np.asarray(model.classes_).astype(str)
        result = M.evaluate_predictions(y_true, proba, classes, train_counts, thresholds, ks=ks,
                                        n_bins=cfg.evaluate.calibration_bins)
        results[spec.name] = result
        per_disease = M.per_disease_table(y_true, proba, classes, train_counts, thresholds)
        per_disease.insert(1, "name", per_disease["disease"].map(names).fillna(""))
        calibration[spec.name] = M.calibration_table(y_true, proba, classes, n_bins=cfg.evaluate.calibration_bins)
        y_pred = classes[np.argmax(proba, axis=1)]
        pairs = M.confused_pairs(y_true, y_pred, top=cfg.evaluate.n_confused_pairs)
        pairs["pair"] = [f"{names.get(a, a)[:30]} -> {names.get(p, p)[:30]}" for a, p in zip(pairs["actual"], pairs["predicted"])]
        out = plot_dir / spec.role
        out.mkdir(parents=True, exist_ok=True)
        per_disease.to_csv(out / "per_disease.csv", index=False)
        calibration[spec.name].to_csv(out / "calibration.csv", index=False)
        pairs.to_csv(out / "confused_pairs.csv", index=False)
        pd.DataFrame({"actual": y_true, "predicted": y_pred}).to_csv(out / "predictions.csv", index=False)
        figures.mkdir(parents=True, exist_ok=True)
        pngs = [plots.plot_recall_vs_train_count(per_disease, figures / f"{spec.name}_recall_vs_train_count.png",
                                                 title=f"{spec.name}: per-disease recall by training patients",
                                                 thresholds=thresholds),
                plots.plot_confused_pairs(pairs, figures / f"{spec.name}_confused_pairs.png", labels=names)]
        with stage_run("evaluate", cfg, nested=True, run_name=f"evaluate/{spec.name}",
                       tags={"dxlab.model": spec.name}):
            log_metrics(result)
            for path in [*pngs, out / "per_disease.csv", out / "calibration.csv"]:
                log_artifact(path)
    pngs = [plots.plot_calibration(calibration, figures / "calibration.png"),
            plots.plot_metrics_by_stratum(results, figures / f"{cfg.evaluate.primary_metric}_by_stratum.png",
                                          metric=cfg.evaluate.primary_metric)]
    for path in pngs:
        log_artifact(path)
    write_json(results, reports / "metrics.json")
    table = metrics_table(results, ks)
    (reports / "metrics.md").write_text(table + "\n")
    print("\n" + table + "\n")
    print(f"Compare runs in the MLflow UI: `make ui` (store: {tracking_uri(cfg)})\n")
    return results


def main() -> None:
    main_for("evaluate", run)


if __name__ == "__main__":
    main()
