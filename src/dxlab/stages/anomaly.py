"""Stage `anomaly`: detectors fitted on the (clean) training patients of every source, scored on test patients
into which labelled anomalies were injected; metrics per detector and anomaly kind, explanations, plots, the fitted
`auto` (what batch and the API flag with), and its flag rate on real cases it never saw: each grouped source's
cases scored by an `auto` fitted without their fold of groups, beside one fitted on the simulated cohort alone
(a detector that never saw a case report flags them wholesale)."""

from __future__ import annotations

import logging
from pathlib import Path

import joblib
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig
from sklearn.pipeline import Pipeline

from dxlab.anomaly.detectors import detectors_from_config
from dxlab.anomaly.explain import explain_top, method_name, plot_embeddings, plot_recall_by_kind
from dxlab.anomaly.patients import anomaly_metrics, inject_anomalies
from dxlab.data.schema import read_parquet
from dxlab.knowledge.base import Knowledge
from dxlab.stages._runner import main_for, write_json
from dxlab.tracking.mlflow_tracking import log_artifact, log_metrics, stage_run

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    a = cfg.anomaly
    processed = Path(cfg.paths.processed)
    reports, figures = Path(a.outputs.reports), Path(a.outputs.figures)
    train, test = read_parquet(processed / "train.parquet"), read_parquet(processed / "test.parquet")
    knowledge = Knowledge.load(cfg.paths.knowledge) if cfg.data.vocabulary == "hpo" else None
    featurizer = instantiate(a.features).fit(train, knowledge=knowledge)
    x_train = featurizer.transform(train)
    corrupted, labels = inject_anomalies(test, float(a.inject_rate), np.random.default_rng(int(a.seed)),
                                         knowledge, kinds=list(a.kinds))
    x_test = featurizer.transform(corrupted)
    metrics, fitted = {}, {}
    for name, detector in detectors_from_config(a).items():
        model = detector.fit(x_train)
        scores = model.score_samples(x_test)
        metrics[name] = anomaly_metrics(labels, scores, model.predict(x_test))
        fitted[name] = (model, scores)
        with stage_run("anomaly", cfg, nested=True, run_name=f"anomaly/{name}", tags={"dxlab.detector": name}):
            log_metrics(metrics[name])
    auto_name = "auto" if "auto" in fitted else next(iter(fitted))
    auto, auto_scores = fitted[auto_name]
    explainers = {method_name(fitted[n][0]): fitted[n][0] for n in ("iforest", "autoencoder") if n in fitted}
    table = explain_top(auto, x_test, top=int(a.explain_top), n_features=int(a.explain_features), scores=auto_scores,
                        reference=x_train, row_ids=x_test.index, explainers=explainers or None)
    table.insert(3, "injected_kind", labels.loc[table["row"], "kind"].to_numpy())
    table.insert(4, "injected_detail", labels.loc[table["row"], "detail"].to_numpy())
    reports.mkdir(parents=True, exist_ok=True)
    table.to_csv(reports / "explanations.csv", index=False)
    kinds = labels["kind"].where(labels["kind"] != "", "normal").to_numpy()
    pngs = plot_embeddings(x_test, kinds, figures, "patients", scores=auto_scores, max_points=int(a.max_plot_points),
                           random_state=int(a.seed), title="test patients with injected anomalies (auto score right)")
    pngs.append(plot_recall_by_kind(metrics, figures / "anomaly_recall_by_kind.png"))
    model_path = Path(a.outputs.model)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(Pipeline([("features", featurizer), ("detector", auto)]), model_path, compress=3)
    real = real_case_flag_rates(cfg, train, knowledge)
    if real:
        metrics["real_cases"] = real
    write_json(metrics, reports / "metrics.json")
    headline = {"n_test": int(len(labels)), "n_injected": int(labels["anomaly"].sum()),
                "detector": auto_name,
                **{k: metrics[auto_name][k] for k in ("roc_auc", "pr_auc", "precision", "recall", "f1")},
                "recall_by_kind": {k: v["recall"] for k, v in metrics[auto_name]["by_kind"].items()},
                "real_cases": real}
    write_json(headline, Path(cfg.paths.reports) / "stages" / "anomaly.json")
    for path in [*pngs, reports / "metrics.json", reports / "explanations.csv"]:
        log_artifact(path)
    log.info("anomaly: %s ROC-AUC %s, F1 %.3f on %d injected of %d test patients", auto_name,
             headline["roc_auc"], headline["f1"], headline["n_injected"], headline["n_test"])
    return metrics


def real_case_flag_rates(cfg: DictConfig, train, knowledge) -> dict:
    """Per grouped source: the share of its cases `auto` flags when fitted without their fold of groups (the same
    sources otherwise), and when fitted on the holdout sources alone (the simulated cohort)."""
    from dxlab.evaluation.cv import grouped_folds

    a = cfg.anomaly
    grouped = [n for n in cfg.data.sources if cfg.data.sources[n].get("evaluation", "holdout") == "grouped"]
    holdout = ~train["source"].isin(grouped).to_numpy()
    out = {}

    def flag_rate(fit_rows, score_rows) -> float:
        features = instantiate(a.features).fit(train[fit_rows], knowledge=knowledge)
        detector = detectors_from_config(a)["auto"].fit(features.transform(train[fit_rows]))
        return float(np.mean(detector.predict(features.transform(train[score_rows]))))

    for name in grouped:
        rows = (train["source"] == name).to_numpy()
        if rows.sum() < 10:
            continue
        fold = np.full(len(train), -1)
        fold[rows] = grouped_folds(train.loc[rows, "diagnosis"], train.loc[rows, "group_id"], 5, int(a.seed))
        flagged = 0.0
        for k in sorted(set(fold[rows].tolist())):
            held = fold == k
            flagged += flag_rate(~held, held) * held.sum()
        out[name] = {"n_cases": int(rows.sum()), "flag_rate": flagged / rows.sum(),
                     "configured_rate": float(a.rate),
                     "flag_rate_of_a_detector_fitted_on_simulated_patients_alone":
                         flag_rate(holdout, rows) if holdout.any() else None}
        log.info("anomaly: auto flags %.1f%% of %s cases it never saw (fitted on the simulated cohort alone: %s)",
                 100 * out[name]["flag_rate"], name,
                 "n/a" if not holdout.any() else f"{100 * out[name]['flag_rate_of_a_detector_fitted_on_simulated_patients_alone']:.1f}%")
    return out


def main() -> None:
    main_for("anomaly", run)


if __name__ == "__main__":
    main()
