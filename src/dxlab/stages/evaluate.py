"""Stage `evaluate`: the baseline and the model on every evaluation line, by slice, with reports and plots.

Lines: each `grouped` source's rows (real case reports), every row scored by what never saw its group (for the
diagnostic model: profiles and neighbours leave the publication out, the reranker and the calibrator are those of
another fold of publications), and each `holdout` source's test split (the simulated cohort: a second, clearly
labelled line). Writes reports/metrics.json (model -> line -> overall / by stratum / sex / age band / knowledge),
reports/metrics.md, the full report of the model on each grouped source (reports/evaluation/<source>/; its per-case
rows in data/evaluation/<source>/ranks.csv), and the reliability and per-disease tables `dvc plots` draws.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from dxlab.data.schema import read_parquet
from dxlab.evaluation.case_report import write_case_outputs, write_report
from dxlab.evaluation.cases import case_metrics, case_table, reliability
from dxlab.evaluation.report import lines_table
from dxlab.models.build import load_model, model_specs
from dxlab.stages._runner import main_for, write_json
from dxlab.tracking.mlflow_tracking import log_artifact, log_metrics, stage_run, tracking_uri

log = logging.getLogger(__name__)


def evaluation_lines(cfg: DictConfig, train: pd.DataFrame, test: pd.DataFrame) -> list[dict]:
    """(name, rows, groups, description) of every line: grouped sources first, then the holdout test splits."""
    lines = []
    for name in cfg.data.sources:
        grouped = cfg.data.sources[name].get("evaluation", "holdout") == "grouped"
        rows = (train if grouped else test)
        rows = rows[rows["source"] == name].reset_index(drop=True)
        if not len(rows):
            continue
        if grouped:
            lines.append({"name": str(name), "rows": rows, "groups": rows["group_id"].astype(str).to_numpy(),
                          "description": f"{name}: every case scored by what never saw its group (publication)"})
        else:
            lines.append({"name": f"{name}_test", "rows": rows, "groups": None,
                          "description": f"{name}: held-out test split"})
    return sorted(lines, key=lambda line: line["groups"] is None)


def run(cfg: DictConfig) -> dict:
    processed, reports = Path(cfg.paths.processed), Path(cfg.paths.reports)
    train, test = read_parquet(processed / "train.parquet"), read_parquet(processed / "test.parquet")
    thresholds = OmegaConf.to_container(cfg.evaluate.strata)
    n_bins = int(cfg.evaluate.calibration_bins)
    lines = evaluation_lines(cfg, train, test)
    results: dict = {}
    for spec in model_specs(cfg):
        model = load_model(cfg.paths.models, spec.name)
        # a model that knows its training rows per disease (and each row's group) says so itself
        counts = (None if hasattr(model, "core_") else
                  spec.training_rows(train)["diagnosis"].astype(str).value_counts().to_dict())
        results[spec.name] = {}
        for line in lines:
            grouped = line["groups"] is not None
            frame = case_table(model, line["rows"], line["groups"], side_by_side=grouped and spec.role == "model",
                               train_counts=counts, thresholds=thresholds)
            metrics = case_metrics(frame, n_bins)
            results[spec.name][line["name"]] = metrics
            plots = reports / "plots" / spec.role / line["name"]
            plots.mkdir(parents=True, exist_ok=True)
            reliability(frame, n_bins).to_csv(plots / "reliability.csv", index=False)
            per_disease = (frame.assign(hit=frame["rank"] <= 1).groupby("true_disease")
                           .agg(training_rows=("training_rows", "max"), cases=("hit", "size"), recall=("hit", "mean"))
                           .reset_index())
            per_disease.to_csv(plots / "per_disease.csv", index=False)
            if grouped and spec.role == "model":
                # the report is committed; its per-case rows stay with the data (data/evaluation, a DVC output)
                ranks = Path(cfg.paths.evaluation) / line["name"]
                out = write_case_outputs(frame, {**metrics, "context": context(model, spec.name, cfg)},
                                         reports / "evaluation" / line["name"], ranks)
                write_report(out, out / "report.md", out / "figures", getattr(model, "disease_names_", {}),
                             title=f"The {spec.name} model on {line['name']}",
                             context={"targets": line["name"] == "case_reports",
                                      "description": line["description"]}, ranks_dir=ranks)
                for path in (out / "report.md", out / "metrics.json"):
                    log_artifact(path, f"evaluation/{line['name']}")
        with stage_run("evaluate", cfg, nested=True, run_name=f"evaluate/{spec.name}",
                       tags={"dxlab.model": spec.name}):
            log_metrics({line: {k: v for k, v in m.items() if k != "side_by_side"}
                         for line, m in results[spec.name].items()})
    evaluation = Path(cfg.paths.evaluation)  # a DVC output: it exists even when no grouped source was read
    if not any(line["groups"] is not None for line in lines):
        evaluation.mkdir(parents=True, exist_ok=True)
        (evaluation / "README.txt").write_text("No per-case rows: no source evaluated by groups (the real case "
                                               "reports) was read in this run; see reports/stages/ingest.json.\n")
    examples = cfg.evaluate.get("examples")
    if examples:
        served = load_model(cfg.paths.models, cfg.model.name)
        if hasattr(served, "explain"):  # the diagnostic model: what the API would answer
            answer_examples(served, OmegaConf.to_container(examples), reports / "evaluation")
        else:
            log.info("no example answers: %s does not explain its ranking (the diagnostic model does)",
                     cfg.model.name)
    write_json(results, reports / "metrics.json")
    table = lines_table(results)
    (reports / "metrics.md").write_text(table + "\n")
    print("\n" + table + "\n")
    print(f"Compare runs in the MLflow UI: `make ui` (store: {tracking_uri(cfg)})\n")
    return {name: {line: m["overall"] for line, m in by_line.items()} for name, by_line in results.items()}


def answer_examples(model, examples: dict, out: Path, k: int = 5) -> Path:
    """The model's top k for each configured presentation, with the findings that support each disease:
    reports/evaluation/examples.{json,md} (what a clinician would read)."""
    rows = [{"patient_id": name, "findings": list(e.get("findings", [])), "excluded": list(e.get("excluded", [])),
             "sex": e.get("sex"), "age": float(e["age"]) if e.get("age") is not None else float("nan"),
             "measurements": {}} for name, e in examples.items()]
    table = pd.DataFrame(rows)
    index, proba, _ = model.predict_top(table, k) if hasattr(model, "predict_top") else (None, None, None)
    answers, lines = {}, []
    for i, (name, row) in enumerate(zip(examples, rows)):
        accounts = model.explain(row, index[i], n=3)
        answers[name] = [{"disease_id": str(model.classes_[j]), "name": model.disease_names_.get(model.classes_[j], ""),
                          "probability": float(p), "supporting": [f["name"] or f["hpo_id"] for f in a["supporting"]]}
                         for j, p, a in zip(index[i], proba[i], accounts)]
        who = "; ".join(x for x in ({"M": "male", "F": "female"}.get(row["sex"] or "", ""),
                                    f"{row['age']:g} years" if np.isfinite(row["age"]) else "") if x)
        findings = ", ".join(model.term_names_.get(t, t) for t in row["findings"])
        lines += [f"**{name}**: {findings}{'; ' + who if who else ''}", "",
                  "| rank | disease | probability | findings for it |", "|---|---|---|---|"]
        lines += [f"| {r} | {a['name']} ({a['disease_id']}) | {a['probability']:.3f} | {', '.join(a['supporting'])} |"
                  for r, a in enumerate(answers[name], start=1)] + [""]
    out.mkdir(parents=True, exist_ok=True)
    write_json(answers, out / "examples.json")
    (out / "examples.md").write_text("\n".join(lines))
    return out / "examples.md"


def context(model, name: str, cfg: DictConfig) -> dict:
    """What the report says about the model: its universe, knowledge version, training sources, parameters."""
    out = {"model": name, "universe_size": int(len(model.classes_))}
    if hasattr(model, "knowledge_version_"):
        out["knowledge_version"] = model.knowledge_version_
    if hasattr(model, "training_sources_"):
        out["training"] = ", ".join(f"{k} ({v:,} rows)" for k, v in model.training_sources_.items())
    if getattr(model, "reranker_", None) is not None:
        out["reranker"] = {"training_cases": model.reranker_.n_training_cases_,
                           "importance": model.reranker_.importance()}
    if hasattr(model, "settings_"):
        out["params"] = model.settings_
    return out


def main() -> None:
    main_for("evaluate", run)


if __name__ == "__main__":
    main()
